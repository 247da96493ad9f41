//! The node's front ends and their wiring: everything that turns a [`crate::HybridCache`]
//! into a server.
//!
//! Why a room of its own: the front ends parse, authenticate, apply limits and call the
//! facade; nothing below them (cache, actors, coherence, config) needs to know they exist.
//! Arrows point down only: `server` imports the library, never the other way round.
//!
//! - [`node`]: wiring of one node (config → cache → HTTP and RESP servers → signal);
//! - [`router`] (`app.rs`): the whole HTTP application; [`service`]: what a node serves,
//!   the router behind the value read (`http::hit_first`);
//! - [`http`]: the HTTP API (routes, error mapping, request and connection limits);
//! - [`openapi`]: the OpenAPI description generated from the HTTP handlers;
//! - [`ui`]: the embedded cluster page;
//! - [`prometheus`]: `/metrics` in Prometheus / OpenMetrics text;
//! - [`resp`]: the Redis protocol (RESP2/RESP3) front end.

mod app;
pub mod http;
pub mod node;
pub mod openapi;
pub mod prometheus;
pub mod resp;
pub mod ui;

pub use app::{router, service};
