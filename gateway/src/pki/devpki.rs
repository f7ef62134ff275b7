//! Development PKI (CA, server and client certificates) for the embedded default.
