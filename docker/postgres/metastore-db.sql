-- The Hive Metastore's own database (LAKEHOUSE_METASTORE_DB, default lakehouse_metastore), owned by
-- the lakehouse role; the metastore container creates its schema on first start.
CREATE DATABASE lakehouse_metastore OWNER CURRENT_USER;
