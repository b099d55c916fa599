-- Room on each page for a row's next version: the first verdict recorded on an order changes
-- no indexed column (the state stays pending, `updated_at` is kept until the decision), so
-- its new version can stay on the page without touching any index (a HOT update). Applies to
-- pages written from now on.
alter table orders set (fillfactor = 80);
