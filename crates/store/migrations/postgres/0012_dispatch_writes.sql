-- The write path of a message at Cloud API speed (issue 5).
--
-- message_events is append-only history, written a batch at a time (a row per state a message
-- reaches). Its foreign key cost each row an index probe into messages, a row lock and a WAL
-- record for that lock: the largest single cost of applying statuses. Messages are never
-- deleted (erasure anonymises them in place), and an event is only written by the statement
-- batch that has just updated or locked its message.
alter table message_events drop constraint if exists message_events_tenant_id_message_id_fkey;

-- Webhook bodies are kept as received; lz4 compresses them several times faster than pglz.
-- A server built without lz4 keeps pglz.
do $$
begin
    alter table webhook_events alter column body set compression lz4;
exception when feature_not_supported or invalid_parameter_value then
    null;
end $$;

-- A message is in its number's lane while it has a next attempt: sending it (or failing it,
-- or cancelling it) clears next_attempt_at. The lane no longer names the status, so no index
-- holds a column that `delivered` and `read` change: those updates, and the claim's, can be
-- HOT (a new row version on the same page, no index entries). Claims still check the status.
update messages set next_attempt_at = null
 where next_attempt_at is not null and status not in ('queued', 'sending');
drop index if exists messages_lane;
create index messages_lane on messages (number_id, priority, next_attempt_at) where next_attempt_at is not null;
-- Room on each page for those versions.
alter table messages set (fillfactor = 80);
