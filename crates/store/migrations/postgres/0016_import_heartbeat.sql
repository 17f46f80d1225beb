-- When an import's runner last wrote progress: an import silent for long (its process died or
-- restarted mid-file) is marked failed instead of staying `running` for ever.
alter table imports add column heartbeat_at timestamptz;
