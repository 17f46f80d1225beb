//! `pinglayer sandbox`: the WhatsApp Cloud API on your own machine.
//!
//! It serves the same paths and JSON as graph.facebook.com (any `vNN.0` prefix): sends that are
//! checked like Meta checks them (token, number, template approval and parameters, the 24-hour
//! rule, per-number throughput, the pair rate limit, an optional daily unique-recipient limit),
//! template management with review, media upload, the Embedded Signup code exchange, and signed
//! webhooks back to a configured URL with configurable delays, rates, duplicates and reordering.
//! `/sandbox/*` lets tests and demos play the customer and look at what was sent.
//!
//! Layout: [`config`] the knobs; [`state`] numbers, templates, windows and the sent log;
//! [`graph`] the Cloud API endpoints; [`control`] the `/sandbox` endpoints; [`webhooks`] the
//! emitter that batches, signs and posts events.

// Handlers return `Result<_, axum::Response>`: the error *is* the HTTP answer, as in Graph.
#![allow(clippy::result_large_err)]

pub mod config;
pub mod control;
pub mod graph;
pub mod state;
pub mod webhooks;

use axum::{
    Router,
    routing::{get, post},
};
use std::{future::Future, net::SocketAddr, sync::Arc};
use tokio::net::TcpListener;

pub use config::{SandboxConfig, SandboxNumber};
pub use state::Sandbox as SandboxState;

pub struct Sandbox {
    listener: TcpListener,
    state: Arc<state::Sandbox>,
    emitter: webhooks::Emitter,
}

impl Sandbox {
    pub async fn build(config: SandboxConfig, bind: SocketAddr) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(bind).await?;
        let (emitter, queue) = webhooks::Emitter::new(&config);
        let state = Arc::new(state::Sandbox::new(config, queue));
        Ok(Self {
            listener,
            state,
            emitter,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("bound")
    }

    pub fn state(&self) -> Arc<state::Sandbox> {
        self.state.clone()
    }

    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let emitter = tokio::spawn(self.emitter.run());
        let app = router(self.state.clone());
        tracing::info!(addr = %self.listener.local_addr()?, "sandbox serving the Cloud API");
        axum::serve(self.listener, app)
            .with_graceful_shutdown(shutdown)
            .await?;
        emitter.abort();
        Ok(())
    }
}

pub fn router(state: Arc<state::Sandbox>) -> Router {
    Router::new()
        .route("/sandbox/numbers", post(control::add_number))
        .route("/sandbox/inbound", post(control::inbound))
        .route("/sandbox/sent", get(control::sent))
        .route("/sandbox/stats", get(control::stats))
        .route(
            "/sandbox/templates/{id}/status",
            post(control::template_status),
        )
        .route("/{version}/oauth/access_token", get(graph::exchange_code))
        .route("/{version}/{id}/messages", post(graph::messages))
        .route("/{version}/{id}/media", post(graph::upload_media))
        .route(
            "/{version}/{id}/message_templates",
            get(graph::list_templates)
                .post(graph::create_template)
                .delete(graph::delete_template),
        )
        .route("/{version}/{id}", get(graph::get_object))
        .with_state(state)
}
