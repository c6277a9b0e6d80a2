//! The built levee.wasm exports the proxy-wasm callbacks levee implements and leaves out those
//! it does not (`make build` runs tools/unexport.py): Envoy skips a callback the module does
//! not export, which saves a VM entry per request for `proxy_on_log`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod harness;

/// An unsigned LEB128 number at `data[*at..]`; moves `at` past it.
fn leb(data: &[u8], at: &mut usize) -> u64 {
    let (mut value, mut shift) = (0u64, 0);
    loop {
        let byte = data[*at];
        *at += 1;
        value |= u64::from(byte & 0x7f) << shift;
        shift += 7;
        if byte < 0x80 {
            return value;
        }
    }
}

/// The names in the module's export section.
fn export_names(module: &[u8]) -> Vec<String> {
    assert_eq!(&module[..8], b"\0asm\x01\0\0\0", "not a wasm module");
    let mut at = 8;
    while at < module.len() {
        let id = module[at];
        at += 1;
        let size = leb(module, &mut at) as usize;
        let end = at + size;
        if id == 7 {
            let mut names = Vec::new();
            for _ in 0..leb(module, &mut at) {
                let len = leb(module, &mut at) as usize;
                names.push(String::from_utf8(module[at..at + len].to_vec()).unwrap());
                at += len + 1; // the name, then the kind
                leb(module, &mut at);
            }
            return names;
        }
        at = end;
    }
    panic!("no export section");
}

#[test]
fn levee_wasm_leaves_out_the_callbacks_levee_does_not_implement() {
    let path = harness::envoy_config::default_wasm_path();
    let module = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let exports = export_names(&module);
    for left_out in [
        "proxy_on_log",
        "proxy_on_request_trailers",
        "proxy_on_response_trailers",
    ] {
        assert!(
            !exports.iter().any(|e| e == left_out),
            "{} exports {left_out}: build it with `make build` (tools/unexport.py)",
            path.display()
        );
    }
    for needed in [
        "proxy_abi_version_0_2_1",
        "proxy_on_memory_allocate",
        "proxy_on_vm_start",
        "proxy_on_configure",
        "proxy_on_tick",
        "proxy_on_context_create",
        "proxy_on_request_headers",
        "proxy_on_request_body",
        "proxy_on_response_headers",
        "proxy_on_response_body",
        "proxy_on_http_call_response",
        "proxy_on_grpc_receive",
        "proxy_on_grpc_close",
        "proxy_on_done",
        "proxy_on_delete",
    ] {
        assert!(
            exports.iter().any(|e| e == needed),
            "{} lacks {needed}",
            path.display()
        );
    }
}
