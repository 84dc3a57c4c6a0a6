-- A study never has two trials with the same configuration: the sampler already avoids
-- repeats; this makes a repeat impossible (StoreError::DuplicateConfig), as the
-- PostgreSQL schema does for replicas suggesting at once.

CREATE UNIQUE INDEX trials_distinct_configs ON trials (study_id, config_key);
