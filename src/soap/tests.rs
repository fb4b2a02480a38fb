//! Tests of the codec against hostile and unusual input.
