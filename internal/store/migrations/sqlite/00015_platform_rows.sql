-- +goose Up
-- PostgreSQL only: row-level security keeps the platform's own rows to the
-- platform role (postgres/00015_platform_rows.sql). SQLite has one role.
SELECT 1;

-- +goose Down
SELECT 1;
