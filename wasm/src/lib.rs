#![no_std]
//! WebAssembly bindings (stub until the wasm issue).
