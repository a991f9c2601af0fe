//! The smallest hotswap handler: edit the greeting, save, and the server answers with it.

use hotswap_handler::{Body, Handler, Request, Response};

pub struct Hello;

impl Handler for Hello {
    type State = ();

    fn new((): ()) -> Self {
        Hello
    }

    async fn handle(&self, request: Request) -> Response {
        match request.uri().path() {
            "/health" => Response::new(Body::from("ok\n")),
            _ => Response::new(Body::from("hello from hotswap\n")),
        }
    }
}

hotswap_handler::export_handler!(Hello);
