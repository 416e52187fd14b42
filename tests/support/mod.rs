//! Test harness: starts the in-process simulator on 127.0.0.1:0 and prepares temp warehouses.
