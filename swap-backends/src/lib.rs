//! Actions on memory and swap devices.
