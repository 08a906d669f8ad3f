"""python -m fluxlite.schema: rewrite the shipped job.schema.json from the field table."""

from fluxlite.schema import SHIPPED, render

SHIPPED.write_text(render(), encoding="utf-8")
print(SHIPPED)
