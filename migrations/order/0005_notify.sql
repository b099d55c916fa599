-- Where the replica that placed the order hears how it ended (`order.outcome.<replica>`), as
-- its `order.cmd.place` named it; null when nobody waits. Whichever replica decides the order
-- tells that one, so no replica needs to hear every outcome.
alter table orders add column notify text;
