//! boifi-deploy integration tests.
