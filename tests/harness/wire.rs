//! HTTP/1.1 framing shared by the test client and the test upstream.
//!
//! Why hand-written: the harness must see exactly what crossed the wire — header values as raw
//! bytes (levee must cope with non-UTF-8 ones), `Transfer-Encoding: chunked` bodies as Envoy
//! sends them, keep-alive connections that carry many requests — and must be able to misbehave
//! on purpose (reset mid-answer, hang up mid-request). An HTTP library would normalise all of
//! that away, and would pull an async runtime into the dev-dependencies.

use std::io::{self, BufRead, Read};

/// Refuse a message head larger than this: a test that hits it has a bug, not a big header.
const MAX_HEAD_BYTES: usize = 1 << 20;

/// Header list in wire order, names lowercased, values as raw bytes.
pub type Headers = Vec<(String, Vec<u8>)>;

/// The start line and headers of a request or response.
#[derive(Debug, Clone)]
pub struct Head {
    /// The first line without CRLF, e.g. `GET /x HTTP/1.1` or `HTTP/1.1 200 OK`.
    pub start_line: String,
    /// Headers in wire order, names lowercased.
    pub headers: Headers,
}

impl Head {
    /// The first value of header `name` (case-insensitive), as raw bytes.
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        header_bytes(&self.headers, name)
    }

    /// Whether header `name` carries token `token` in its comma-separated list.
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .flat_map(|(_, v)| v.split(|b| *b == b','))
            .any(|t| trim(t).eq_ignore_ascii_case(token.as_bytes()))
    }

    /// The parsed `Content-Length`, if present and valid.
    pub fn content_length(&self) -> Option<usize> {
        self.get("content-length")
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|s| s.trim().parse().ok())
    }

    /// Whether the body is sent with `Transfer-Encoding: chunked`.
    pub fn is_chunked(&self) -> bool {
        self.has_token("transfer-encoding", "chunked")
    }
}

/// First value of `name` in `headers` (case-insensitive).
pub fn header_bytes<'a>(headers: &'a Headers, name: &str) -> Option<&'a [u8]> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_slice())
}

/// Reads one message head. `Ok(None)` means the peer closed the connection cleanly before
/// sending a single byte (the normal end of a keep-alive connection).
pub fn read_head(r: &mut impl BufRead) -> io::Result<Option<Head>> {
    let mut start_line = Vec::new();
    // Tolerate stray empty lines between keep-alive messages (RFC 9112 §2.2).
    loop {
        start_line.clear();
        if r.read_until(b'\n', &mut start_line)? == 0 {
            return Ok(None);
        }
        if !trim(&start_line).is_empty() {
            break;
        }
    }
    let mut headers = Vec::new();
    let mut total = start_line.len();
    loop {
        let mut line = Vec::new();
        if r.read_until(b'\n', &mut line)? == 0 {
            return Err(eof("connection closed inside a message head"));
        }
        total += line.len();
        if total > MAX_HEAD_BYTES {
            return Err(invalid("message head over 1 MiB"));
        }
        let line = trim_crlf(&line);
        if line.is_empty() {
            break;
        }
        let colon = line
            .iter()
            .position(|b| *b == b':')
            .ok_or_else(|| invalid("header line without ':'"))?;
        let name = String::from_utf8_lossy(&line[..colon]).to_ascii_lowercase();
        headers.push((name, trim(&line[colon + 1..]).to_vec()));
    }
    Ok(Some(Head {
        start_line: String::from_utf8_lossy(trim_crlf(&start_line)).into_owned(),
        headers,
    }))
}

/// How the body after a head is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body at all (requests without length, HEAD answers, 1xx/204/304).
    None,
    /// Exactly this many bytes.
    Length(usize),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Until the peer closes the connection (responses without a length).
    UntilClose,
}

/// Framing of a request body (RFC 9112 §6.3: no length means no body).
pub fn request_framing(head: &Head) -> BodyFraming {
    if head.is_chunked() {
        BodyFraming::Chunked
    } else {
        head.content_length()
            .map_or(BodyFraming::None, BodyFraming::Length)
    }
}

/// Framing of a response body, given the request method and the response status.
pub fn response_framing(head: &Head, method: &str, status: u16) -> BodyFraming {
    if method.eq_ignore_ascii_case("HEAD") || status < 200 || status == 204 || status == 304 {
        BodyFraming::None
    } else if head.is_chunked() {
        BodyFraming::Chunked
    } else {
        head.content_length()
            .map_or(BodyFraming::UntilClose, BodyFraming::Length)
    }
}

/// Reads a body framed as `framing`; chunked bodies are returned de-chunked.
pub fn read_body(r: &mut impl BufRead, framing: BodyFraming) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    match framing {
        BodyFraming::None => {}
        BodyFraming::Length(n) => {
            body.resize(n, 0);
            r.read_exact(&mut body)?;
        }
        BodyFraming::UntilClose => {
            r.read_to_end(&mut body)?;
        }
        BodyFraming::Chunked => loop {
            let mut line = Vec::new();
            if r.read_until(b'\n', &mut line)? == 0 {
                return Err(eof("connection closed inside a chunked body"));
            }
            let size_text = String::from_utf8_lossy(trim_crlf(&line)).into_owned();
            let size_hex = size_text.split(';').next().unwrap_or("").trim();
            let size =
                usize::from_str_radix(size_hex, 16).map_err(|_| invalid("bad chunk size line"))?;
            if size == 0 {
                // Trailers (ignored) end with an empty line.
                loop {
                    let mut t = Vec::new();
                    if r.read_until(b'\n', &mut t)? == 0 || trim_crlf(&t).is_empty() {
                        break;
                    }
                }
                break;
            }
            let start = body.len();
            body.resize(start + size, 0);
            r.read_exact(&mut body[start..])?;
            let mut crlf = Vec::new();
            r.read_until(b'\n', &mut crlf)?;
        },
    }
    Ok(body)
}

/// Encodes `body` as one data chunk plus the last chunk.
pub fn chunk(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 16);
    if !body.is_empty() {
        out.extend_from_slice(format!("{:x}\r\n", body.len()).as_bytes());
        out.extend_from_slice(body);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

/// The standard reason phrase for common statuses (only cosmetic on the wire).
pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        400 => "Bad Request",
        404 => "Not Found",
        409 => "Conflict",
        422 => "Unprocessable Content",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

fn trim_crlf(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn trim(v: &[u8]) -> &[u8] {
    let start = v
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(v.len());
    let end = v
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &v[start..end]
}

fn invalid(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

fn eof(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, msg.to_string())
}
