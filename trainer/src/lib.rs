//! steerlab trainer library.
