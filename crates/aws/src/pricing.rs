//! On-demand hourly prices from the AWS Price List API (`pricing:GetProducts`).
//!
//! The API answers in `us-east-1` (and two other regions) for every region. Prices are
//! those of Linux instances with shared tenancy and no pre-installed software, which
//! is what a stopped instance saves at the least; the price of a product is its
//! on-demand hourly rate in USD.

use std::collections::BTreeMap;
use std::sync::Arc;

use aws_config::{Region, SdkConfig};
use aws_sdk_pricing::types::{Filter, FilterType};
use ec2_scheduler_engine::ports::{ApiError, ErrorKind};
use serde_json::Value;

use crate::api_error;
use crate::calls::{CallCounter, Counting};

/// The region whose endpoint answers for every region's prices.
pub const ENDPOINT_REGION: &str = "us-east-1";

/// Instance types asked for in one request (the filter's value is a comma-separated
/// list).
const TYPES_PER_REQUEST: usize = 40;

/// Attributes every priced product must have: what the filters ask for, checked again
/// on what comes back.
const PRODUCT: &[(&str, &str)] = &[
    ("operatingSystem", "Linux"),
    ("tenancy", "Shared"),
    ("preInstalledSw", "NA"),
    ("capacitystatus", "Used"),
    ("licenseModel", "No License required"),
];

/// A client of the Price List API.
pub struct PriceList {
    client: aws_sdk_pricing::Client,
}

impl PriceList {
    /// A client with `config`'s credentials (and endpoint, when one is set), in
    /// [`ENDPOINT_REGION`], whose requests `counter` counts.
    pub fn new(config: &SdkConfig, counter: Arc<CallCounter>) -> Self {
        let conf = aws_sdk_pricing::config::Builder::from(config)
            .region(Region::new(ENDPOINT_REGION))
            .interceptor(Counting(counter))
            .build();
        PriceList {
            client: aws_sdk_pricing::Client::from_conf(conf),
        }
    }

    /// Hourly on-demand prices in USD of `types` in `region`, by instance type. A type
    /// the API does not price in that region is absent from the answer.
    ///
    /// # Errors
    /// The API's errors (as [`ApiError`]s of `pricing:GetProducts`), or an answer
    /// that is not the documented JSON.
    pub async fn on_demand(
        &self,
        region: &str,
        types: &[String],
    ) -> Result<BTreeMap<String, f64>, ApiError> {
        let mut out = BTreeMap::new();
        for chunk in types.chunks(TYPES_PER_REQUEST) {
            let mut token: Option<String> = None;
            loop {
                let mut req = self
                    .client
                    .get_products()
                    .service_code("AmazonEC2")
                    .format_version("aws_v1")
                    .max_results(100)
                    .filters(filter(FilterType::TermMatch, "regionCode", region)?)
                    .filters(filter(FilterType::AnyOf, "instanceType", &chunk.join(","))?)
                    .set_next_token(token.take());
                for (field, value) in PRODUCT {
                    req = req.filters(filter(FilterType::TermMatch, field, value)?);
                }
                let page = req
                    .send()
                    .await
                    .map_err(|e| api_error("pricing:GetProducts", &e))?;
                for doc in page.price_list() {
                    let (t, price) = hourly_price(doc).map_err(|what| ApiError {
                        kind: ErrorKind::Other,
                        action: "pricing:GetProducts".into(),
                        code: "UnexpectedAnswer".into(),
                        message: format!("a product in the price list: {what}"),
                        instances: Vec::new(),
                    })?;
                    let Some((t, price)) = t.zip(price) else {
                        continue;
                    };
                    if t.is_empty() || !chunk.contains(&t) {
                        continue;
                    }
                    // Several products of one type (should the filters let more
                    // through): the cheapest is what is saved at the least.
                    let e = out.entry(t).or_insert(price);
                    *e = f64::min(*e, price);
                }
                match page.next_token() {
                    Some(t) if !t.is_empty() => token = Some(t.to_string()),
                    _ => break,
                }
            }
        }
        Ok(out)
    }
}

fn filter(kind: FilterType, field: &str, value: &str) -> Result<Filter, ApiError> {
    Filter::builder()
        .r#type(kind)
        .field(field)
        .value(value)
        .build()
        .map_err(|e| ApiError {
            kind: ErrorKind::Other,
            action: "pricing:GetProducts".into(),
            code: "InvalidRequest".into(),
            message: e.to_string(),
            instances: Vec::new(),
        })
}

/// The instance type and hourly on-demand USD price of one product document of the
/// Price List API; `None` for a product that is not a Linux, shared-tenancy,
/// on-demand instance hour.
///
/// # Errors
/// A document that is not JSON or whose price is not a number.
pub fn hourly_price(doc: &str) -> Result<(Option<String>, Option<f64>), String> {
    let v: Value = serde_json::from_str(doc).map_err(|e| format!("not JSON: {e}"))?;
    let attrs = &v["product"]["attributes"];
    let Some(t) = attrs["instanceType"].as_str() else {
        return Ok((None, None));
    };
    if PRODUCT
        .iter()
        .any(|(k, want)| attrs[*k].as_str() != Some(*want))
    {
        return Ok((Some(t.to_string()), None));
    }
    let mut best: Option<f64> = None;
    let terms = v["terms"]["OnDemand"].as_object().into_iter().flatten();
    for (_, term) in terms {
        let dims = term["priceDimensions"].as_object().into_iter().flatten();
        for (_, d) in dims {
            if d["unit"].as_str() != Some("Hrs") {
                continue;
            }
            let Some(text) = d["pricePerUnit"]["USD"].as_str() else {
                continue;
            };
            let p: f64 = text
                .parse()
                .ok()
                .filter(|p: &f64| p.is_finite() && *p >= 0.0)
                .ok_or_else(|| format!("{t}: price {text:?} is not a number of 0 or more"))?;
            best = Some(best.map_or(p, |b| b.min(p)));
        }
    }
    Ok((Some(t.to_string()), best))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A product document as the API returns it (abridged to the fields read).
    fn product(t: &str, os: &str, price: &str) -> String {
        serde_json::json!({
            "product": {
                "productFamily": "Compute Instance",
                "attributes": {
                    "instanceType": t, "regionCode": "eu-west-1", "operatingSystem": os,
                    "tenancy": "Shared", "preInstalledSw": "NA", "capacitystatus": "Used",
                    "licenseModel": "No License required", "marketoption": "OnDemand"
                },
                "sku": "SKU1"
            },
            "serviceCode": "AmazonEC2",
            "terms": {"OnDemand": {"SKU1.JRTCKXETXF": {
                "offerTermCode": "JRTCKXETXF", "sku": "SKU1",
                "priceDimensions": {"SKU1.JRTCKXETXF.6YS6EN2CT7": {
                    "unit": "Hrs", "beginRange": "0", "endRange": "Inf",
                    "description": "On Demand Linux instance hour",
                    "pricePerUnit": {"USD": price}
                }}
            }}}
        })
        .to_string()
    }

    #[test]
    fn a_product_gives_its_type_and_hourly_price() {
        assert_eq!(
            hourly_price(&product("m5.large", "Linux", "0.1070000000")).unwrap(),
            (Some("m5.large".into()), Some(0.107))
        );
        // Not Linux: no price taken.
        assert_eq!(
            hourly_price(&product("m5.large", "Windows", "0.2")).unwrap(),
            (Some("m5.large".into()), None)
        );
        assert!(
            hourly_price(&product("m5.large", "Linux", "cheap"))
                .unwrap_err()
                .contains("m5.large: price \"cheap\"")
        );
        assert!(hourly_price("{").unwrap_err().starts_with("not JSON"));
        assert_eq!(hourly_price("{}").unwrap(), (None, None));
    }
}
