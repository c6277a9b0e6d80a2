//! Which request attributes the idempotency layer asks for: a request without a key must
//! not cost the method read when the key is optional (in Envoy each read that returns data
//! is a round trip into the VM; an absent header is not), and the decisions stay the same.

use crate::config::ClientIpConfig;
use crate::idempotency::layer::{IdempotencyLayer, KeyCheck};
use crate::request::fake::{FakeRequest, Recording};
use crate::store::hash::KeyHasher;

use super::cfg;

const CLIENT_IP: ClientIpConfig = ClientIpConfig {
    xff_trusted_hops: 0,
    ipv6_prefix: 64,
};

fn check(required: bool, req: &Recording) -> KeyCheck {
    let layer = IdempotencyLayer::new(&crate::config::IdempotencyConfig { required, ..cfg() }, 64);
    layer.check_key(&KeyHasher::new([3; 16]), &CLIENT_IP, req)
}

#[test]
fn an_optional_key_that_is_absent_costs_no_method_read() {
    for method in ["GET", "POST"] {
        let req = Recording::new(FakeRequest::new(method, "/"));
        assert!(matches!(check(false, &req), KeyCheck::NotKeyed), "{method}");
        assert_eq!(*req.asked.borrow(), ["idempotency-key"], "{method}");
    }
}

#[test]
fn a_key_still_applies_only_to_the_configured_methods() {
    let get = Recording::new(FakeRequest::get("/").header("idempotency-key", "k1"));
    assert!(matches!(check(false, &get), KeyCheck::NotKeyed));
    assert!(get.asked.borrow().contains(&":method".to_string()));
    let post = Recording::new(FakeRequest::new("POST", "/").header("idempotency-key", "k1"));
    assert!(matches!(check(false, &post), KeyCheck::Keyed { .. }));
}

#[test]
fn a_required_key_is_missing_only_on_the_configured_methods() {
    let get = Recording::new(FakeRequest::get("/"));
    assert!(matches!(check(true, &get), KeyCheck::NotKeyed));
    let post = Recording::new(FakeRequest::new("POST", "/"));
    assert!(matches!(check(true, &post), KeyCheck::Missing));
}
