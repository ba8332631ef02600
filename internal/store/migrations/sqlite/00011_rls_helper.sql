-- +goose Up
-- PostgreSQL only (row-level security); kept so versions match across dialects.
SELECT 1;

-- +goose Down
SELECT 1;
