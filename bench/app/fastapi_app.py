"""The benchmark's FastAPI app, for the memory case (7): the framework's import is the memory that
PRELOAD_APP shares between workers. GET /items/{id} returns a pydantic model."""

from fastapi import FastAPI
from pydantic import BaseModel


class Item(BaseModel):
    id: int
    name: str
    tags: list[str]


app = FastAPI()


@app.get("/items/{item_id}")
def item(item_id: int) -> Item:
    return Item(id=item_id, name=f"item {item_id}", tags=["a", "b"])
