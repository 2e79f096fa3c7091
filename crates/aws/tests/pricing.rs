//! The Price List client against a loopback server that answers `GetProducts` as the
//! API does (the emulator used for the other adapters has no Price List API).

use std::sync::Arc;

use ec2_scheduler_aws::pricing::PriceList;
use ec2_scheduler_aws::{CallCounter, Connect, sdk_config};
use ec2_scheduler_testkit::price_list::{product, serve};
use serde_json::json;

#[tokio::test]
async fn prices_are_read_from_every_page_for_the_types_and_region_asked() {
    let (endpoint, seen) = serve(vec![
        json!({
            "FormatVersion": "aws_v1",
            "PriceList": [
                product("m5.large", "eu-west-1", "Linux", "0.1070000000"),
                product("m5.large", "eu-west-1", "Windows", "0.1990000000"),
            ],
            "NextToken": "page-2"
        }),
        json!({
            "FormatVersion": "aws_v1",
            "PriceList": [product("t3.micro", "eu-west-1", "Linux", "0.0114000000")]
        }),
    ]);
    let conf = sdk_config(&Connect {
        region: Some("eu-west-1".into()),
        endpoint_url: Some(endpoint),
        ..Connect::default()
    })
    .await;
    let counter = Arc::new(CallCounter::default());
    let prices = PriceList::new(&conf, counter.clone())
        .on_demand(
            "eu-west-1",
            &["m5.large".into(), "t3.micro".into(), "x9.huge".into()],
        )
        .await
        .unwrap();
    assert_eq!(
        prices.into_iter().collect::<Vec<_>>(),
        vec![("m5.large".into(), 0.107), ("t3.micro".into(), 0.0114)]
    );
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2, "{seen:?}");
    let (target, first) = &seen[0];
    assert_eq!(target, "AWSPriceListService.GetProducts");
    assert_eq!(first["ServiceCode"], "AmazonEC2");
    assert!(first.get("NextToken").is_none());
    assert_eq!(seen[1].1["NextToken"], "page-2");
    let filters: Vec<(String, String, String)> = first["Filters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let s = |k: &str| f[k].as_str().unwrap().to_string();
            (s("Type"), s("Field"), s("Value"))
        })
        .collect();
    for want in [
        ("TERM_MATCH", "regionCode", "eu-west-1"),
        ("ANY_OF", "instanceType", "m5.large,t3.micro,x9.huge"),
        ("TERM_MATCH", "operatingSystem", "Linux"),
        ("TERM_MATCH", "tenancy", "Shared"),
        ("TERM_MATCH", "capacitystatus", "Used"),
    ] {
        assert!(
            filters
                .iter()
                .any(|f| (f.0.as_str(), f.1.as_str(), f.2.as_str()) == want),
            "{want:?} not in {filters:?}"
        );
    }
    assert_eq!(counter.snapshot()["pricing:GetProducts"], 2);
}

#[tokio::test]
async fn an_answer_that_is_not_a_price_list_is_an_error_naming_the_product() {
    let (endpoint, _) = serve(vec![json!({
        "PriceList": [product("m5.large", "eu-west-1", "Linux", "free")]
    })]);
    let conf = sdk_config(&Connect {
        region: Some("eu-west-1".into()),
        endpoint_url: Some(endpoint),
        ..Connect::default()
    })
    .await;
    let e = PriceList::new(&conf, Arc::default())
        .on_demand("eu-west-1", &["m5.large".into()])
        .await
        .unwrap_err();
    assert_eq!(e.action, "pricing:GetProducts");
    assert!(e.message.contains("m5.large: price \"free\""), "{e:?}");
}
