-- Issue 9: cancelling an invoice has its own permission, invoices:cancel, apart from
-- invoices:write (which a publishable key holds to create invoices from a web page). Secret keys
-- issued before the split cancelled with invoices:write and keep doing so: their rows gain
-- invoices:cancel here, and a rebuild from their events does the same (libs/common/apikeys.py
-- `upcast`, for events without a permissions_revision). Publishable keys do not.
UPDATE api_keys SET permissions = array_append(permissions, 'invoices:cancel')
WHERE key_type = 'secret' AND 'invoices:write' = ANY (permissions)
  AND NOT ('invoices:cancel' = ANY (permissions));
