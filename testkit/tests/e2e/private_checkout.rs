//! A checkout in a private folder (`/root/...`, a `mktemp -d`): `./stack up` works there without
//! loosening the folder's permissions, although PostgreSQL and Nginx's workers run as other users.

use std::os::unix::fs::PermissionsExt;

use serde_json::json;
use testkit::{http::Client, stack::Stack};

#[tokio::test]
async fn a_stack_runs_from_a_checkout_in_a_folder_only_its_owner_may_enter() {
    let stack = Stack::up_in_private_checkout();
    let private = stack
        .dir()
        .ancestors()
        .nth(2)
        .expect("the private folder")
        .to_owned();
    let http = Client::new(stack.url());

    let user =
        json!({"command": "create", "id": 7, "username": "root", "email": "r@x", "password": "pw"});
    assert_eq!(http.post("/user", &user).await.status, 200);
    assert_eq!(http.get("/user/7").await.json["username"], "root");
    // Read by a worker, which could not enter the checkout.
    let document = http.get("/openapi.json").await;
    assert_eq!(
        (document.status, document.json["openapi"].clone()),
        (200, json!("3.0.3"))
    );

    let mode = std::fs::metadata(&private)
        .expect("private folder")
        .permissions()
        .mode();
    assert_eq!(
        mode & 0o777,
        0o700,
        "the private folder's permissions changed"
    );
    let outside: Vec<_> = ["pg", "nginx/workers"]
        .iter()
        .filter_map(|part| std::fs::canonicalize(stack.dir().join(part)).ok())
        .filter(|real| !real.starts_with(&private))
        .collect();
    stack.run("clean");
    assert!(!stack.dir().exists(), "clean leaves the state directory");
    for real in outside {
        assert!(!real.exists(), "clean leaves {real:?}");
    }
}
