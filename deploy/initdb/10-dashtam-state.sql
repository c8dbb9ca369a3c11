-- The Dashtam state store's database (DASHTAM_STATE_URL), beside Dagster's own.
CREATE DATABASE dashtam_state;
