pub mod coherence;
pub mod wire;
