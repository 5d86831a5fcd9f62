"""What a typed hook expects, as shown to a person resuming it: a JSON Schema and an example its validation accepts."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Literal

import pydantic

import durable
from durable._client.hookschema import example, expected_payload, json_schema
from durable._workflow.schemas import validate_payload


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


@dataclass
class Painted:
    colour: Colour


@dataclass
class Address:
    city: str
    zip: str | None = None


@dataclass
class Order:
    id: int
    price: float
    gift: bool
    addresses: list[Address]
    tags: dict[str, int]
    size: Literal["S", "M", "L"]
    pair: tuple[int, str]
    note: str | None
    extra: list[str] = field(default_factory=list)
    count: int = 1


def test_a_dataclass_schema_follows_what_validation_checks() -> None:
    """Fields without a default are required, unknown ones refused; types, enums, literals, optionals,
    nested dataclasses, lists, dicts and fixed tuples are described; plain defaults are shown."""
    schema = json_schema(Order)
    assert schema is not None
    assert (schema["type"], schema["additionalProperties"], schema["title"]) == ("object", False, "Order")
    assert schema["required"] == ["id", "price", "gift", "addresses", "tags", "size", "pair", "note"]
    props = schema["properties"]
    assert (props["id"], props["price"], props["gift"]) == ({"type": "integer"}, {"type": "number"}, {"type": "boolean"})
    assert props["addresses"]["items"]["required"] == ["city"]
    assert props["addresses"]["items"]["properties"]["zip"] == {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None}
    assert props["tags"] == {"type": "object", "additionalProperties": {"type": "integer"}}
    assert props["size"] == {"enum": ["S", "M", "L"]}
    assert json_schema(Painted) == {"title": "Painted", "type": "object", "properties": {"colour": {"enum": ["red", "blue"]}},
                                    "required": ["colour"], "additionalProperties": False}
    assert props["pair"] == {"type": "array", "prefixItems": [{"type": "integer"}, {"type": "string"}], "minItems": 2, "maxItems": 2}
    assert props["count"] == {"type": "integer", "default": 1}
    assert "default" not in props["extra"]  # a factory's value is not shown


def test_the_example_of_a_dataclass_schema_passes_its_validation() -> None:
    """The example a form is filled with is accepted by the hook's own validation as it stands."""
    schema = json_schema(Order)
    assert schema is not None
    payload = example(schema)
    assert payload == {"id": 0, "price": 0, "gift": False, "addresses": [], "tags": {}, "size": "S", "pair": [0, ""], "note": ""}
    assert validate_payload(Order, payload) == Order(0, 0.0, False, [], {}, "S", (0, ""), "")


class Line(pydantic.BaseModel):
    sku: str
    quantity: int = 1


class Cart(pydantic.BaseModel):
    owner: str
    lines: list[Line]
    coupon: Line | None = None


def test_a_pydantic_model_describes_itself_and_its_example_validates() -> None:
    """A pydantic model's schema is its own model_json_schema; the example follows its $refs and validates."""
    schema = json_schema(Cart)
    assert schema == Cart.model_json_schema()
    payload = example(schema)
    assert payload == {"owner": "", "lines": []}
    assert Cart.model_validate(payload) == Cart(owner="", lines=[])
    assert example(schema["$defs"]["Line"], schema) == {"sku": ""}


def test_only_definitions_known_here_have_a_schema_to_show() -> None:
    """A hook defined with a validator callable has no schema to show but is known; a name no definition here
    carries is unknown (the server would refuse its payloads)."""

    def positive(value: Any) -> bool:
        return isinstance(value, int) and value > 0

    durable.define_hook(schema=positive, name="schemas-positive")
    durable.define_hook(schema=Address, name="schemas-address")
    assert expected_payload("schemas-positive") == (None, None, True)
    described, sample, known = expected_payload("schemas-address")
    assert (known, sample, described and described["required"]) == (True, {"city": ""}, ["city"])
    assert expected_payload("schemas-nowhere") == (None, None, False)
