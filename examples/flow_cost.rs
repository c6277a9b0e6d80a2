//! The cost of levee's pure request path, without Envoy: ns per request for a plugin config,
//! and the shared-data reads and writes per request by key family (`COUNT=1`).
//!
//! `cargo run --release --example flow_cost -- '<plugin json>' [requests]`
//!
//! Why: `make bench` measures levee inside Envoy, where host calls dominate; this isolates
//! the plain-Rust part (matching, hashing, slot buckets, algorithms, headers) so that a change
//! to it can be measured alone, and shows how many shared-data calls a config costs.
use levee::metrics::{Event, Metrics};
use levee::pipeline::flow::{Await, RequestFlow, Step};
use levee::pipeline::step::UpstreamAnswer;
use levee::pipeline::{Env, Plugin};
use levee::random::SplitMix64;
use levee::request::plain::{PlainHead, PlainRequest};
use levee::store::{ensure_key, MemoryStore};

/// Counts every allocation (and reallocation), so the request path's allocations per request
/// can be printed beside its time.
struct CountingAlloc;
static ALLOCS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl std::alloc::GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, l: std::alloc::Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        std::alloc::System.alloc(l)
    }
    unsafe fn dealloc(&self, p: *mut u8, l: std::alloc::Layout) {
        std::alloc::System.dealloc(p, l)
    }
    unsafe fn realloc(&self, p: *mut u8, l: std::alloc::Layout, n: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        std::alloc::System.realloc(p, l, n)
    }
}
#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

struct Req {
    headers: Vec<(String, Vec<u8>)>,
}
impl PlainRequest for Req {
    fn plain_head(&self) -> PlainHead<'_> {
        PlainHead {
            method: "GET",
            path: "/",
            headers: &self.headers,
            source: Some("127.0.0.1:40000"),
            route: None,
        }
    }
}

struct Counting<'a> {
    inner: &'a MemoryStore,
    seen: std::cell::RefCell<std::collections::BTreeMap<String, (u64, u64)>>,
}
fn family(k: &str) -> String {
    k.trim_end_matches(|c: char| c.is_ascii_digit()).to_string()
}
impl levee::store::SharedStore for Counting<'_> {
    fn get(&self, key: &str) -> Result<Option<levee::store::Versioned>, levee::store::ReadError> {
        self.seen.borrow_mut().entry(family(key)).or_default().0 += 1;
        self.inner.get(key)
    }
    fn set(
        &self,
        key: &str,
        v: &[u8],
        cas: Option<levee::store::Cas>,
    ) -> Result<(), levee::store::WriteError> {
        self.seen.borrow_mut().entry(family(key)).or_default().1 += 1;
        self.inner.set(key, v, cas)
    }
}

struct NoMetrics;
impl Metrics for NoMetrics {
    fn count(&mut self, _: Event) {}
    fn breaker_state(&mut self, _: usize, _: u8) {}
}

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().collect();
    let json = args.get(1).cloned().unwrap_or_else(|| "{}".into());
    let n: u64 = args
        .get(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let cfg = levee::config::parse(json.as_bytes()).map_err(|e| e.to_string())?;
    let plugin = Plugin::new(cfg, [1; 16]);
    let store = MemoryStore::new();
    for t in plugin.tables() {
        t.ensure_created(&store).map_err(|e| format!("{e:?}"))?;
    }
    for k in plugin.plain_keys() {
        ensure_key(&store, &k, b"").map_err(|e| format!("{e:?}"))?;
    }
    let counting = Counting {
        inner: &store,
        seen: Default::default(),
    };
    let store_ref: &dyn levee::store::SharedStore = if std::env::var("COUNT").is_ok() {
        &counting
    } else {
        &store
    };
    let mut rng = SplitMix64::seeded(1);
    let mut m = NoMetrics;
    let req = Req {
        headers: [
            (":method", "GET"),
            (":path", "/"),
            (":authority", "127.0.0.1:1000"),
            ("x-user", "bench-user"),
            ("user-agent", "wrk"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
        .collect(),
    };
    let allocs_before = ALLOCS.load(std::sync::atomic::Ordering::Relaxed);
    let start = std::time::Instant::now();
    let mut now: u64 = 1_700_000_000_000_000_000;
    for i in 0..n {
        now += 1000;
        let mut flow = RequestFlow::new(i);
        let step = flow.on_request_headers(
            &mut Env::new(&plugin, store_ref, now, &mut rng, &mut m),
            &req,
            true,
        );
        if let Step::Await(Await::Callout(_)) = step {
            // Callout mode: the upstream answers 200 at once.
            let headers = vec![
                (":status".to_string(), b"200".to_vec()),
                ("content-length".to_string(), b"2".to_vec()),
            ];
            let _ = flow.on_callout_response(
                &mut Env::new(&plugin, store_ref, now, &mut rng, &mut m),
                Some(headers),
                b"ok".to_vec(),
            );
        }
        let answer = UpstreamAnswer {
            status: 200,
            flags: 0,
            headers: vec![],
            end_of_stream: false,
        };
        let _ = flow.on_response_headers(
            &mut Env::new(&plugin, store_ref, now, &mut rng, &mut m),
            answer,
        );
        flow.on_done(&mut Env::new(&plugin, store_ref, now, &mut rng, &mut m));
    }
    let el = start.elapsed();
    let allocs = ALLOCS.load(std::sync::atomic::Ordering::Relaxed) - allocs_before;
    for (k, (g, st)) in counting.seen.borrow().iter() {
        println!("  {k}: gets {g} sets {st}");
    }
    let st = store.stats();
    println!(
        "gets/request {:.2} sets/request {:.2}",
        st.gets as f64 / n as f64,
        st.sets as f64 / n as f64
    );
    println!("{:.0} ns/request", el.as_nanos() as f64 / n as f64);
    println!(
        "allocations/request {:.2} (reallocations included)",
        allocs as f64 / n as f64
    );
    Ok(())
}
