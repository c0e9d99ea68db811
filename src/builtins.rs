//! Builtin services. STUB: replaced by the builtins helper.
