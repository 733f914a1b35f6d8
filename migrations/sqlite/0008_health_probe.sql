-- Where readiness checks that writes work again after the disk was full (see the store's
-- ping): a row of 64 KiB written and deleted in one transaction. Empty otherwise.
create table health_probe (
    id      integer primary key,
    payload blob not null
);
