//! The key-part syntax: how a config names the parts of "who" a limit or record belongs to.
//!
//! `source_ip | client_ip | method | path | route_name | header:NAME | query:NAME |
//! metadata:FILTER/PATH`. Header names are lower-cased here (Envoy stores them lower-case),
//! query names are kept as written (query strings are case-sensitive), and a metadata
//! reference splits at its first `/`: the filter name may contain dots
//! (`envoy.filters.http.jwt_authn`), the path after it has one or more `/`-separated
//! segments (`metadata:envoy.filters.http.jwt_authn/payload/sub`).

use super::types::KeyPart;

/// The valid forms, for error messages.
pub const VALID_FORMS: &str =
    "source_ip, client_ip, method, path, route_name, header:NAME, query:NAME, metadata:FILTER/PATH";

/// Parses one key part; the error is a message to put after the part's JSON path.
pub fn parse(s: &str) -> Result<KeyPart, String> {
    let quoted = super::raw::quote(s);
    let part = match s {
        "source_ip" => KeyPart::SourceIp,
        "client_ip" => KeyPart::ClientIp,
        "method" => KeyPart::Method,
        "path" => KeyPart::Path,
        "route_name" => KeyPart::RouteName,
        _ => match s.split_once(':') {
            Some(("header", name)) => KeyPart::Header(
                header_name(name).ok_or_else(|| format!("{quoted}: {}", HEADER_NAME_RULE))?,
            ),
            Some(("query", name)) if !name.is_empty() && name.bytes().all(is_query_name_byte) => {
                KeyPart::Query(name.to_owned())
            }
            Some(("query", _)) => {
                return Err(format!("{quoted}: a query parameter name must be non-empty, without spaces, \"&\", \"=\" or \"#\""))
            }
            Some(("metadata", reference)) => metadata(reference)
                .ok_or_else(|| format!("{quoted}: write metadata:FILTER/PATH, e.g. metadata:envoy.filters.http.jwt_authn/payload/sub"))?,
            _ => return Err(format!("{quoted} is not a key part (use one of: {VALID_FORMS})")),
        },
    };
    Ok(part)
}

/// What a header name may be, for error messages.
pub const HEADER_NAME_RULE: &str =
    "not a valid header name (use letters, digits and !#$%&'*+-.^_`|~, optionally after one leading \":\")";

/// Lower-cases a header name after checking it is an HTTP token (RFC 9110), optionally a
/// pseudo-header such as `:authority`.
pub fn header_name(name: &str) -> Option<String> {
    let token = name.strip_prefix(':').unwrap_or(name);
    if token.is_empty() || !token.bytes().all(is_token_byte) {
        return None;
    }
    Some(name.to_ascii_lowercase())
}

/// An RFC 9110 `tchar`.
pub fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn is_query_name_byte(b: u8) -> bool {
    b.is_ascii_graphic() && !b"&=#?".contains(&b)
}

fn metadata(reference: &str) -> Option<KeyPart> {
    let (filter, path) = reference.split_once('/')?;
    let segments: Vec<String> = path.split('/').map(str::to_owned).collect();
    let clean = |s: &str| !s.is_empty() && !s.chars().any(char::is_whitespace);
    if !clean(filter) || !segments.iter().all(|s| clean(s)) {
        return None;
    }
    Some(KeyPart::Metadata {
        filter: filter.to_owned(),
        path: segments,
    })
}

/// The config text of a part (the inverse of [`parse`]), for the effective config.
pub fn display(part: &KeyPart) -> String {
    match part {
        KeyPart::SourceIp => "source_ip".into(),
        KeyPart::ClientIp => "client_ip".into(),
        KeyPart::Method => "method".into(),
        KeyPart::Path => "path".into(),
        KeyPart::RouteName => "route_name".into(),
        KeyPart::Header(n) => format!("header:{n}"),
        KeyPart::Query(n) => format!("query:{n}"),
        KeyPart::Metadata { filter, path } => format!("metadata:{filter}/{}", path.join("/")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_plain_parts() {
        assert_eq!(parse("source_ip"), Ok(KeyPart::SourceIp));
        assert_eq!(parse("client_ip"), Ok(KeyPart::ClientIp));
        assert_eq!(parse("method"), Ok(KeyPart::Method));
        assert_eq!(parse("path"), Ok(KeyPart::Path));
        assert_eq!(parse("route_name"), Ok(KeyPart::RouteName));
    }

    #[test]
    fn header_names_are_lower_cased() {
        assert_eq!(
            parse("header:X-User-Id"),
            Ok(KeyPart::Header("x-user-id".into()))
        );
        assert_eq!(
            parse("header::authority"),
            Ok(KeyPart::Header(":authority".into()))
        );
    }

    #[test]
    fn query_names_keep_their_case() {
        assert_eq!(parse("query:apiKey"), Ok(KeyPart::Query("apiKey".into())));
    }

    #[test]
    fn metadata_splits_filter_at_first_slash_and_keeps_every_segment() {
        assert_eq!(
            parse("metadata:envoy.filters.http.jwt_authn/payload/sub"),
            Ok(KeyPart::Metadata {
                filter: "envoy.filters.http.jwt_authn".into(),
                path: vec!["payload".into(), "sub".into()]
            })
        );
    }

    #[test]
    fn malformed_parts_are_refused_with_the_valid_forms() {
        let e = parse("ip").unwrap_err();
        assert!(e.contains("source_ip, client_ip"), "{e}");
        for bad in [
            "header:",
            "header:x user",
            "query:",
            "query:a=b",
            "metadata:jwt",
            "metadata:/sub",
            "metadata:jwt/",
            "metadata:jwt/a//b",
            "cookie:x",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn display_inverts_parse() {
        for s in [
            "source_ip",
            "client_ip",
            "method",
            "path",
            "route_name",
            "header:x-a",
            "query:q",
            "metadata:f.x/a/b",
        ] {
            assert_eq!(display(&parse(s).unwrap()), s);
        }
    }
}
