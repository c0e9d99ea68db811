//! only_from / deny_from. STUB: replaced by the limits helper.
