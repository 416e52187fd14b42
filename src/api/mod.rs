//! Talking to Pluvo: OAuth token cache, GraphQL requests with retries and rate awareness, and
//! the Relay pager. Knows nothing of DuckDB; extractors and write-back never build HTTP
//! requests themselves.
