//! A context over a real store in a temporary directory, with a manual clock.

use regmesh_location::{Location, ManualClock, NodeId, Timestamp};
use regmesh_registrar::Stats;
use regmesh_rpc::RpcContext;
use serde_json::{Value, json};
use std::sync::Arc;

/// Node id of the test node.
pub(crate) const NODE: NodeId = NodeId(7);

/// Wall-clock time the tests start at (2023-11-14T22:13:20Z).
pub(crate) const START: Timestamp = Timestamp::from_secs(1_700_000_000);

pub(crate) struct Env {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) clock: Arc<ManualClock>,
    pub(crate) ctx: RpcContext,
}

impl Env {
    pub(crate) fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let clock = Arc::new(ManualClock::new(START));
        let ctx = context(&dir, clock.clone());
        Self { dir, clock, ctx }
    }

    /// Close the store and open it again from disk, as after a restart.
    pub(crate) fn reopen(&mut self) {
        self.ctx.location.close().expect("close");
        self.ctx = context(&self.dir, self.clock.clone());
    }

    /// Call `method` with `params`; the whole response object.
    pub(crate) async fn call(&self, method: &str, params: Value) -> Value {
        let req = json!({"jsonrpc": "2.0", "method": method, "params": params, "id": 1});
        self.raw(&serde_json::to_vec(&req).expect("json")).await
    }

    /// The `result` of a call that must succeed.
    pub(crate) async fn ok(&self, method: &str, params: Value) -> Value {
        let resp = self.call(method, params).await;
        assert!(resp.get("error").is_none(), "{method} failed: {resp}");
        resp["result"].clone()
    }

    /// The `error` of a call that must fail.
    pub(crate) async fn err(&self, method: &str, params: Value) -> Value {
        let resp = self.call(method, params).await;
        assert!(resp.get("result").is_none(), "{method} succeeded: {resp}");
        resp["error"].clone()
    }

    /// Send raw bytes; the parsed response (panics if there is none).
    pub(crate) async fn raw(&self, body: &[u8]) -> Value {
        let out = regmesh_rpc::handle(&self.ctx, body)
            .await
            .expect("a response");
        serde_json::from_slice(&out).expect("response is JSON")
    }
}

fn context(dir: &tempfile::TempDir, clock: Arc<ManualClock>) -> RpcContext {
    let location = Location::open(&dir.path().join("location"), NODE, clock).expect("open store");
    RpcContext {
        location: Arc::new(location),
        stats: Arc::new(Stats::default()),
        realm: None,
        node: NODE,
        started: START,
        default_expires: 3600,
        max_expires: 86_400,
        max_contacts: 0,
        calls: Default::default(),
    }
}

/// Assert an invalid-params error naming `param`.
#[track_caller]
pub(crate) fn assert_invalid_param(err: &Value, param: &str) {
    assert_eq!(err["code"], -32602, "{err}");
    assert_eq!(err["data"]["param"], param, "{err}");
    let msg = err["message"].as_str().unwrap_or_default();
    assert!(msg.contains(&format!("`{param}`")), "{msg}");
}
