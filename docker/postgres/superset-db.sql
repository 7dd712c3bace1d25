-- Superset's metadata database (LAKEHOUSE_SUPERSET_DB, default lakehouse_superset), owned by the lakehouse
-- role that runs the init scripts; the superset container builds its schema on start.
CREATE DATABASE lakehouse_superset;
