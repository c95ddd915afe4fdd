//! Integration tests that drive the real `keyhold` binary (and, where a test
//! needs to reach inside the store, the domain and storage crates directly).
//!
//! One test binary: `cargo test -p keyhold --test it`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod audit_tamper;
mod backup;
mod checkpoints;
mod common;
mod crash_loop;
mod demo_command;
mod identity_command;
mod instances;
mod key_permissions;
mod org_command;
mod plaintext;
mod rotation;
mod schema;
mod serve_demo;
