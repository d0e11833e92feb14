# A free-form value of the wrong type: refused by `serve --check`.
{ settings.max_requests = "lots"; }
