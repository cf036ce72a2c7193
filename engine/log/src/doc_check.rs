//! Checks that `engine/docs/storage.md` matches the encoders byte for byte.
