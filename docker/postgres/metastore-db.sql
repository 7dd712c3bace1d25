-- The Hive Metastore's own database (LAKEHOUSE_METASTORE_DB, default lakehouse_metastore; the name is
-- also in docker/metastore/metastore-site.xml). The init script runs as the lakehouse role, which owns it;
-- the metastore container creates its schema on first start.
CREATE DATABASE lakehouse_metastore;
