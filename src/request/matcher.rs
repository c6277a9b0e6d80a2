//! Does a request fall under a `match` block? Runs on every request for every rate limit,
//! the idempotency block and every route, so it allocates nothing and checks the cheap,
//! in-VM conditions (method, route) before the ones that may cost a host call (headers).
//!
//! Semantics: every present condition must hold; `path_prefix` is compared
//! byte-for-byte with the path Envoy normalised, without its query string; `methods` are
//! exact and case-sensitive (config methods are upper-cased at load, and Envoy forwards the
//! method as the client sent it — `get` is not `GET`, as in Envoy's own route matching);
//! `headers` compare the first value of the header exactly.

use super::RequestAttributes;
use crate::config::RequestMatch;

/// True when every condition of `m` holds for `req`; an empty match holds for every request.
pub fn matches(m: &RequestMatch, req: &dyn RequestAttributes) -> bool {
    if !m.methods.is_empty() {
        let method = req.method();
        if !m.methods.iter().any(|x| x == method) {
            return false;
        }
    }
    if let Some(route) = &m.route_name {
        if req.route_name() != Some(route.as_str()) {
            return false;
        }
    }
    // "/" is every path, as in Envoy's `prefix: "/"`: no need to read it.
    if let Some(prefix) = m.path_prefix.as_deref().filter(|p| *p != "/") {
        if !path_only(req.path_and_query()).starts_with(prefix) {
            return false;
        }
    }
    m.headers
        .iter()
        .all(|(name, value)| req.header(name) == Some(value.as_bytes()))
}

/// The path without its query string (and without a fragment, should one reach Envoy).
pub fn path_only(path_and_query: &str) -> &str {
    match path_and_query.find(['?', '#']) {
        Some(i) => &path_and_query[..i],
        None => path_and_query,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::fake::FakeRequest;

    fn m(
        prefix: Option<&str>,
        methods: &[&str],
        route: Option<&str>,
        headers: &[(&str, &str)],
    ) -> RequestMatch {
        RequestMatch {
            path_prefix: prefix.map(Into::into),
            methods: methods.iter().map(|s| (*s).to_owned()).collect(),
            route_name: route.map(Into::into),
            headers: headers
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    #[test]
    fn empty_match_holds_for_every_request() {
        assert!(matches(
            &RequestMatch::default(),
            &FakeRequest::new("DELETE", "/anything?x=1")
        ));
    }

    #[test]
    fn path_prefix_ignores_the_query_string() {
        let rule = m(Some("/api/"), &[], None, &[]);
        assert!(matches(&rule, &FakeRequest::get("/api/orders?limit=5")));
        assert!(!matches(&rule, &FakeRequest::get("/health?next=/api/")));
        assert!(!matches(&rule, &FakeRequest::get("/api")));
        let exact = m(Some("/api"), &[], None, &[]);
        assert!(!matches(&exact, &FakeRequest::get("/a?pi")));
    }

    #[test]
    fn root_prefix_matches_every_request_without_reading_the_path() {
        let rule = m(Some("/"), &[], None, &[]);
        assert!(matches(&rule, &FakeRequest::get("/anything?x=1")));
        // `OPTIONS *` and CONNECT have no "/" path; "/" still covers them, like no prefix.
        assert!(matches(&rule, &FakeRequest::new("OPTIONS", "*")));
        assert!(matches(&rule, &FakeRequest::new("CONNECT", "")));
    }

    #[test]
    fn methods_are_exact_and_case_sensitive() {
        let rule = m(None, &["POST", "PUT"], None, &[]);
        assert!(matches(&rule, &FakeRequest::new("PUT", "/")));
        assert!(!matches(&rule, &FakeRequest::new("post", "/")));
        assert!(!matches(&rule, &FakeRequest::get("/")));
    }

    #[test]
    fn route_name_must_be_present_and_equal() {
        let rule = m(None, &[], Some("orders"), &[]);
        assert!(matches(&rule, &FakeRequest::get("/").route("orders")));
        assert!(!matches(&rule, &FakeRequest::get("/").route("orders-v2")));
        assert!(!matches(&rule, &FakeRequest::get("/")));
    }

    #[test]
    fn headers_compare_exact_values() {
        let rule = m(None, &[], None, &[("x-tenant", "acme"), ("x-plan", "free")]);
        let req = FakeRequest::get("/")
            .header("x-tenant", "acme")
            .header("x-plan", "free");
        assert!(matches(&rule, &req));
        assert!(!matches(
            &rule,
            &FakeRequest::get("/").header("x-tenant", "acme")
        ));
        assert!(!matches(
            &rule,
            &FakeRequest::get("/")
                .header("x-tenant", "Acme")
                .header("x-plan", "free")
        ));
    }

    #[test]
    fn all_conditions_must_hold() {
        let rule = m(Some("/pay"), &["POST"], None, &[("x-tenant", "acme")]);
        assert!(matches(
            &rule,
            &FakeRequest::new("POST", "/pay/1").header("x-tenant", "acme")
        ));
        assert!(!matches(&rule, &FakeRequest::new("POST", "/pay/1")));
        assert!(!matches(
            &rule,
            &FakeRequest::new("GET", "/pay/1").header("x-tenant", "acme")
        ));
    }
}
