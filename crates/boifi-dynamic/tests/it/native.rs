//! What only the native module needs shown.
