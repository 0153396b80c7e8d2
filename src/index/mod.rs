//! Vector search building blocks: distance kernels (and, with the segments work, the ANN
//! indexes). Nothing here knows about records, metadata or files.

pub mod distance;
pub mod topk;
