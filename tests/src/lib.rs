//! End-to-end test package: see the tests in tests/tests/.
