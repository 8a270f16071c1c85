-- A blob's name for its holder (a file name, say): shown in listings, changed by
-- uploading the same bytes under another name.
ALTER TABLE blobs ADD COLUMN name TEXT;
