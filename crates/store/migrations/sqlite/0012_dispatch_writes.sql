-- A message is in its number's lane while it has a next attempt (see the PostgreSQL
-- migration): status changes after sending no longer touch the lane index.
update messages set next_attempt_at = null
 where next_attempt_at is not null and status not in ('queued', 'sending');
drop index if exists messages_lane;
create index messages_lane on messages (number_id, priority, next_attempt_at) where next_attempt_at is not null;
