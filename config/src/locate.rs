//! Maps key paths to positions in the text and back.
