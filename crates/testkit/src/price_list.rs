//! A loopback server that answers the Price List API's `GetProducts` as AWS does
//! (JSON 1.1, product documents as strings, pages joined by `NextToken`), since the
//! emulator has no Price List API. It records what it was asked.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

/// A product document of the API for a Linux (or `os`) instance type in `region`,
/// abridged to the fields a reader needs, at `price` USD an hour.
pub fn product(t: &str, region: &str, os: &str, price: &str) -> String {
    json!({
        "product": {"attributes": {
            "instanceType": t, "regionCode": region, "operatingSystem": os, "tenancy": "Shared",
            "preInstalledSw": "NA", "capacitystatus": "Used", "licenseModel": "No License required"
        }, "sku": "S"},
        "terms": {"OnDemand": {"S.T": {"priceDimensions": {"S.T.R": {
            "unit": "Hrs", "pricePerUnit": {"USD": price}
        }}}}}
    })
    .to_string()
}

/// The requests a server received: (`X-Amz-Target`, JSON body).
pub type Received = Arc<Mutex<Vec<(String, Value)>>>;

/// Serves `pages` in turn, answering each request with the next one; returns the
/// endpoint and the request bodies received.
pub fn serve(pages: Vec<Value>) -> (String, Received) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let seen = Received::default();
    let log = seen.clone();
    std::thread::spawn(move || {
        let mut pages = pages.into_iter();
        for conn in listener.incoming() {
            let Ok(conn) = conn else { return };
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut out = conn;
            loop {
                let mut target = String::new();
                let mut len = 0usize;
                let mut line = String::new();
                let mut first = true;
                loop {
                    line.clear();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        break;
                    }
                    if line == "\r\n" {
                        break;
                    }
                    if first {
                        first = false;
                        continue;
                    }
                    let (k, v) = line.split_once(':').unwrap_or(("", ""));
                    match k.to_ascii_lowercase().as_str() {
                        "content-length" => len = v.trim().parse().unwrap(),
                        "x-amz-target" => target = v.trim().to_string(),
                        _ => {}
                    }
                }
                if first {
                    break;
                }
                let mut body = vec![0; len];
                reader.read_exact(&mut body).unwrap();
                log.lock()
                    .unwrap()
                    .push((target, serde_json::from_slice(&body).unwrap()));
                let answer = pages.next().unwrap_or_else(|| json!({"PriceList": []}));
                let text = answer.to_string();
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/x-amz-json-1.1\r\nContent-Length: {}\r\n\r\n",
                    text.len()
                );
                out.write_all(head.as_bytes()).unwrap();
                out.write_all(text.as_bytes()).unwrap();
            }
        }
    });
    (endpoint, seen)
}
