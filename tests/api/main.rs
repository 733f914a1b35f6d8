//! The integration suite: the real server over real HTTP, every case on SQLite and Postgres.

#![allow(clippy::unwrap_used)]

mod helpers;

mod artifacts;
mod auth;
mod blobs;
mod cards;
mod cli;
mod cli_support;
mod cluster;
mod corpus;
mod digest;
mod erase;
mod errors;
mod event_stream;
mod events;
mod faults;
mod guards;
mod hardening;
mod health;
mod inputs;
mod limits;
mod metrics;
mod mlflow;
mod mlflow_logged;
mod mlflow_registry;
mod models;
mod pg;
mod pki;
mod point_blocks;
mod policies;
mod processes;
mod properties;
mod receiver;
mod replicas;
mod requests;
mod retention;
mod schemas;
mod signatures;
mod spec;
mod stages;
mod sync;
mod tls;
mod trust;
mod ui;
mod upgrade;
mod verify;
mod versions;
mod web;
mod webhook_processes;
mod webhooks;
