-- Present (not soft-deleted) users.
select id, ref, name, email, last_login, archived, language
from {{ source('pluvo', 'users') }}
where _deleted_at is null
