//! In-process Pluvo simulator (tests, demo, benchmarks). Same contract as `contract/pluvo.graphql`.
