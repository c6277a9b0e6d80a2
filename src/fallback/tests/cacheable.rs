use crate::config::{ClientIpConfig, KeyPart};
use crate::fallback::cacheable::*;
use crate::request::fake::FakeRequest;
use crate::store::KeyHasher;

fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
        .collect()
}

fn verdict(req: &FakeRequest, status: u16, headers: &[(&str, &str)]) -> Result<(), NotStored> {
    check(req, status, &h(headers), 10, 100)
}

/// (name, request, status, response headers, verdict).
type Case<'a> = (
    &'a str,
    &'a FakeRequest,
    u16,
    Vec<(&'a str, &'a str)>,
    Result<(), NotStored>,
);

#[test]
fn cacheability_table() {
    let get = FakeRequest::get("/a");
    let authed = FakeRequest::get("/a").header("authorization", "Bearer x");
    let cookied = FakeRequest::get("/a").header("cookie", "s=1");
    let cases: Vec<Case> = vec![
        ("plain 200", &get, 200, vec![], Ok(())),
        ("203", &get, 203, vec![], Ok(())),
        ("204", &get, 204, vec![], Ok(())),
        (
            "201 is an action",
            &get,
            201,
            vec![],
            Err(NotStored::Status(201)),
        ),
        (
            "206 is a fragment",
            &get,
            206,
            vec![],
            Err(NotStored::Status(206)),
        ),
        (
            "301 redirect",
            &get,
            301,
            vec![],
            Err(NotStored::Status(301)),
        ),
        ("304", &get, 304, vec![], Err(NotStored::Status(304))),
        ("404", &get, 404, vec![], Err(NotStored::Status(404))),
        ("500", &get, 500, vec![], Err(NotStored::Status(500))),
        (
            "no-store",
            &get,
            200,
            vec![("Cache-Control", "max-age=5, No-Store")],
            Err(NotStored::NoStore),
        ),
        (
            "private",
            &get,
            200,
            vec![("cache-control", "private")],
            Err(NotStored::Private),
        ),
        (
            "private with fields",
            &get,
            200,
            vec![("cache-control", "private=\"x-a, x-b\", max-age=1")],
            Err(NotStored::Private),
        ),
        (
            "private in a second field",
            &get,
            200,
            vec![("cache-control", "public"), ("cache-control", "private")],
            Err(NotStored::Private),
        ),
        (
            "public beats nothing but is not needed",
            &get,
            200,
            vec![("cache-control", "public, max-age=60")],
            Ok(()),
        ),
        (
            "no-cache is a freshness rule: kept",
            &get,
            200,
            vec![("cache-control", "no-cache, must-revalidate")],
            Ok(()),
        ),
        (
            "quoted comma does not split",
            &get,
            200,
            vec![("cache-control", "community=\"a,no-store\"")],
            Ok(()),
        ),
        (
            "set-cookie",
            &get,
            200,
            vec![("Set-Cookie", "s=1")],
            Err(NotStored::SetCookie),
        ),
        (
            "vary star",
            &get,
            200,
            vec![("vary", "accept, *")],
            Err(NotStored::VaryStar),
        ),
        (
            "vary names",
            &get,
            200,
            vec![("vary", "Accept-Encoding")],
            Ok(()),
        ),
        (
            "authorization without public",
            &authed,
            200,
            vec![("cache-control", "max-age=60")],
            Err(NotStored::Credentials),
        ),
        (
            "authorization with public",
            &authed,
            200,
            vec![("cache-control", "public")],
            Ok(()),
        ),
        (
            "authorization with s-maxage",
            &authed,
            200,
            vec![("cache-control", "s-maxage=30")],
            Ok(()),
        ),
        (
            "authorization, public but private too",
            &authed,
            200,
            vec![("cache-control", "public, private")],
            Err(NotStored::Private),
        ),
        (
            "cookie without public",
            &cookied,
            200,
            vec![],
            Err(NotStored::Credentials),
        ),
        (
            "cookie with public",
            &cookied,
            200,
            vec![("cache-control", "PUBLIC")],
            Ok(()),
        ),
    ];
    for (name, req, status, headers, want) in cases {
        assert_eq!(verdict(req, status, &headers), want, "{name}");
    }
}

#[test]
fn only_get_and_head_are_kept() {
    for (method, ok) in [
        ("GET", true),
        ("HEAD", true),
        ("POST", false),
        ("get", false),
        ("PUT", false),
    ] {
        let req = FakeRequest::new(method, "/a");
        assert_eq!(verdict(&req, 200, &[]).is_ok(), ok, "{method}");
    }
    assert_eq!(
        verdict(&FakeRequest::new("POST", "/a"), 200, &[]),
        Err(NotStored::Method)
    );
}

#[test]
fn body_over_max_body_bytes_is_not_kept() {
    let req = FakeRequest::get("/a");
    assert_eq!(check(&req, 200, &[], 100, 100), Ok(()));
    assert_eq!(
        check(&req, 200, &[], 101, 100),
        Err(NotStored::BodyTooLarge { len: 101, max: 100 })
    );
}

#[test]
fn oversized_header_block_is_not_kept() {
    let req = FakeRequest::get("/a");
    let big = "x".repeat(MAX_STORED_HEADER_BYTES);
    assert!(matches!(
        check_headers(&req, 200, &h(&[("x-big", &big)])),
        Err(NotStored::HeadersTooLarge { .. })
    ));
}

#[test]
fn vary_names_are_lowercased_sorted_and_merged() {
    let headers = h(&[
        ("Vary", "Accept-Language, accept"),
        ("vary", " Accept ,X-Tenant,"),
    ]);
    assert_eq!(
        vary_names(&headers).unwrap(),
        ["accept", "accept-language", "x-tenant"]
    );
    assert_eq!(vary_names(&h(&[])).unwrap(), Vec::<String>::new());
}

#[test]
fn vary_digest_matches_only_the_same_values() {
    let hasher = KeyHasher::new([3; 16]);
    let resp = h(&[("vary", "accept-language")]);
    let en = FakeRequest::get("/a").header("accept-language", "en");
    let de = FakeRequest::get("/a").header("accept-language", "de");
    let none = FakeRequest::get("/a");
    let empty = FakeRequest::get("/a").header("accept-language", "");
    let d = |r: &FakeRequest| VaryValues::from_request(&resp, r).unwrap().digest(&hasher);
    assert_eq!(
        d(&en),
        d(&FakeRequest::get("/b").header("accept-language", "en"))
    );
    assert_ne!(d(&en), d(&de));
    assert_ne!(d(&none), d(&empty), "absent differs from empty");
    // Headers not named by Vary do not matter.
    assert_eq!(d(&en), d(&en.clone().header("x-other", "1")));
}

#[test]
fn cache_key_is_method_path_query_and_parts() {
    let ip = ClientIpConfig {
        xff_trusted_hops: 0,
        ipv6_prefix: 64,
    };
    let parts = [KeyPart::Header("x-user-id".into())];
    let key = |r: &FakeRequest| {
        let mut out = Vec::new();
        cache_key(r, &parts, &ip, &mut out);
        out
    };
    let base = FakeRequest::get("/a?x=1").header("x-user-id", "u1");
    assert_eq!(
        key(&base),
        key(&FakeRequest::get("/a?x=1").header("x-user-id", "u1"))
    );
    assert_ne!(
        key(&base),
        key(&FakeRequest::get("/a?x=2").header("x-user-id", "u1"))
    );
    assert_ne!(
        key(&base),
        key(&FakeRequest::get("/a?x=1").header("x-user-id", "u2"))
    );
    assert_ne!(
        key(&base),
        key(&FakeRequest::new("HEAD", "/a?x=1").header("x-user-id", "u1"))
    );
    assert_ne!(key(&base), key(&FakeRequest::get("/a?x=1")));
}
