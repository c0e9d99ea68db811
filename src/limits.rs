//! Connection limits. STUB: replaced by the limits helper.
