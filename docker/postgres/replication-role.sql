-- Debezium (a later issue) reads the write-ahead log as the lakehouse role.
ALTER ROLE CURRENT_USER WITH REPLICATION;
