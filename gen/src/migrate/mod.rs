//! Migration between providers.
