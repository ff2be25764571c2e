//! Integration tests of regmesh-rpc against a real location store in a
//! temporary directory: the handlers through `handle`, then the HTTP and
//! UNIX transports.

mod handlers;
mod http;
mod support;
mod unix;
